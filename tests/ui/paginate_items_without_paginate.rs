integration_runtime::integration!("./specs/paginate_items_without_paginate.toml");

fn main() {}
