integration_runtime::integration!("./specs/entity_contains_itself.toml");

fn main() {}
