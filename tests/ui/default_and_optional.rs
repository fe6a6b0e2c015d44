integration_runtime::integration!("./specs/default_and_optional.toml");

fn main() {}
