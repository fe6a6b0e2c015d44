integration_runtime::integration!("./specs/unknown_retry_key.toml");

fn main() {}
