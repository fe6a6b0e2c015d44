integration_runtime::integration!("./specs/value_map_missing_value.toml");

fn main() {}
