integration_runtime::integration!("./specs/unknown_field_key.toml");

fn main() {}
