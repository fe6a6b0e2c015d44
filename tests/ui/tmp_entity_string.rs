integration_runtime::integration!("./specs/tmp_entity_string.toml");

fn main() {}
