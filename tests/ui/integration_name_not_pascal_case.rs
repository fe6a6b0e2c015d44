integration_runtime::integration!("./specs/integration_name_not_pascal_case.toml");

fn main() {}
