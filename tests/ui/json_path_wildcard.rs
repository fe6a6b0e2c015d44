integration_runtime::integration!("./specs/json_path_wildcard.toml");

fn main() {}
