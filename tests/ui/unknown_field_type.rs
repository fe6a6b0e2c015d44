integration_runtime::integration!("./specs/unknown_field_type.toml");

fn main() {}
