integration_runtime::integration!("./specs/no_cascade_from_broken_field.toml");

fn main() {}
