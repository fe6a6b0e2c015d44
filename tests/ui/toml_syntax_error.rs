integration_runtime::integration!("./specs/toml_syntax_error.toml");

fn main() {}
