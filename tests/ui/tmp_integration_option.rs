integration_runtime::integration!("./specs/tmp_integration_option.toml");

fn main() {}
