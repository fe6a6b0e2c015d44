integration_runtime::integration!("./specs/entity_name_collides.toml");

fn main() {}
