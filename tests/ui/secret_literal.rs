integration_runtime::integration!("./specs/secret_literal.toml");

fn main() {}
