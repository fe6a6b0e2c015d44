integration_runtime::integration!("./specs/json_path_filter.toml");

fn main() {}
