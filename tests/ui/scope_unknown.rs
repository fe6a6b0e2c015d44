integration_runtime::integration!("./specs/scope_unknown.toml");

fn main() {}
