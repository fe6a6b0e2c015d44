integration_runtime::integration!("./specs/unknown_endpoint_key.toml");

fn main() {}
