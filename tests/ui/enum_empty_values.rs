integration_runtime::integration!("./specs/enum_empty_values.toml");

fn main() {}
