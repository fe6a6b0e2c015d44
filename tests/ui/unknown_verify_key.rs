integration_runtime::integration!("./specs/unknown_verify_key.toml");

fn main() {}
