integration_runtime::integration!("./specs/async_start_reply_without_result.toml");

fn main() {}
