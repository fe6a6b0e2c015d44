integration_runtime::integration!("./specs/paginate_unknown_style.toml");

fn main() {}
