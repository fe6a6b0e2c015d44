integration_runtime::integration!("./specs/body_unknown_field.toml");

fn main() {}
