integration_runtime::integration!("./specs/unknown_integration_key.toml");

fn main() {}
