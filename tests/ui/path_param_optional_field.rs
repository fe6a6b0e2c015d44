integration_runtime::integration!("./specs/path_param_optional_field.toml");

fn main() {}
