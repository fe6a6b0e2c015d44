integration_runtime::integration!("./specs/paginate_key_of_other_style.toml");

fn main() {}
