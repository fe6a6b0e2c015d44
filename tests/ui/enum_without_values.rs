integration_runtime::integration!("./specs/enum_without_values.toml");

fn main() {}
