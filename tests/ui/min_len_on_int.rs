integration_runtime::integration!("./specs/min_len_on_int.toml");

fn main() {}
