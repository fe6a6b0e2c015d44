integration_runtime::integration!("./specs/path_param_no_source.toml");

fn main() {}
