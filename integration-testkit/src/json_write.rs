//! Writing a value at a singular JSON path, creating what is missing: the
//! inverse of extraction, so a fake response puts each field exactly where
//! the spec's paths will look for it.

use integration_spec::ir::Segment;
use serde_json::{Map, Value};

/// Sets `value` at `path` inside `root`, creating objects for names and
/// arrays (padded with nulls) for indices. Negative indices count from the
/// end of an existing array and are ignored when it is too short.
pub(crate) fn set(root: &mut Value, path: &[Segment], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *root = value;
        return;
    };
    let slot = match first {
        Segment::Name(name) => {
            if !root.is_object() {
                *root = Value::Object(Map::new());
            }
            let Value::Object(map) = root else { return };
            map.entry(name.clone()).or_insert(Value::Null)
        }
        Segment::Index(index) => {
            if !root.is_array() {
                *root = Value::Array(Vec::new());
            }
            let Value::Array(items) = root else { return };
            let position = if *index >= 0 {
                let position = *index as usize;
                if items.len() <= position {
                    items.resize(position + 1, Value::Null);
                }
                position
            } else {
                match items.len().checked_sub(index.unsigned_abs() as usize) {
                    Some(position) => position,
                    None => return,
                }
            };
            &mut items[position]
        }
    };
    set(slot, rest, value);
}

#[cfg(test)]
mod tests {
    use integration_spec::ir::JsonPath;
    use serde_json::json;

    use super::*;

    fn put(root: &mut Value, path: &str, value: Value) {
        set(root, &JsonPath::parse(path).unwrap().segments, value);
    }

    #[test]
    fn creates_nested_objects_and_arrays() {
        let mut root = Value::Null;
        put(&mut root, "$.data.task_id", json!("t-1"));
        put(&mut root, "$.data.state", json!("done"));
        put(&mut root, "$.items[2].id", json!(7));
        assert_eq!(
            root,
            json!({ "data": { "task_id": "t-1", "state": "done" }, "items": [null, null, { "id": 7 }] })
        );
    }

    #[test]
    fn root_path_replaces_everything() {
        let mut root = json!({ "a": 1 });
        put(&mut root, "$", json!([1, 2]));
        assert_eq!(root, json!([1, 2]));
        put(&mut root, "$[-1]", json!(3));
        assert_eq!(root, json!([1, 3]));
        put(&mut root, "$[-5]", json!(9));
        assert_eq!(root, json!([1, 3]), "out of range negative index is ignored");
    }
}
