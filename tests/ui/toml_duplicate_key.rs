integration_runtime::integration!("./specs/toml_duplicate_key.toml");

fn main() {}
