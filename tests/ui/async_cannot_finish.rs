integration_runtime::integration!("./specs/async_cannot_finish.toml");

fn main() {}
