integration_runtime::integration!("./specs/status_map_missing_failed.toml");

fn main() {}
