integration_runtime::integration!("./specs/tmp_two_enum_collide.toml");

fn main() {}
