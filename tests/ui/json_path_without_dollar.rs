integration_runtime::integration!("./specs/json_path_without_dollar.toml");

fn main() {}
