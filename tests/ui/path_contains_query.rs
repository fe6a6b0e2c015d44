integration_runtime::integration!("./specs/path_contains_query.toml");

fn main() {}
