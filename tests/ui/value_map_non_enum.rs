integration_runtime::integration!("./specs/value_map_non_enum.toml");

fn main() {}
