integration_runtime::integration!("./specs/mapping_unclosed_brace.toml");

fn main() {}
