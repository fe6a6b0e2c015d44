integration_runtime::integration!("./specs/no_such_spec.toml");

fn main() {}
