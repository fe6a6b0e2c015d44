integration_runtime::integration!("./specs/default_wrong_type.toml");

fn main() {}
