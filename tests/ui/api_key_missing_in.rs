integration_runtime::integration!("./specs/api_key_missing_in.toml");

fn main() {}
