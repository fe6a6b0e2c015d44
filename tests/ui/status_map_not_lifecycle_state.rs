integration_runtime::integration!("./specs/status_map_not_lifecycle_state.toml");

fn main() {}
