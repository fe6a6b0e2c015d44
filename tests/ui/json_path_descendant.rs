integration_runtime::integration!("./specs/json_path_descendant.toml");

fn main() {}
