integration_runtime::integration!("./specs/entity_cycle_through_two.toml");

fn main() {}
