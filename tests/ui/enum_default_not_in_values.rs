integration_runtime::integration!("./specs/enum_default_not_in_values.toml");

fn main() {}
