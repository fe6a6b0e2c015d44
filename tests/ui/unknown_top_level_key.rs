integration_runtime::integration!("./specs/unknown_top_level_key.toml");

fn main() {}
