integration_runtime::integration!("./specs/unknown_retry_class.toml");

fn main() {}
