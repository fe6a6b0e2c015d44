integration_runtime::integration!("./specs/missing_integration_name.toml");

fn main() {}
