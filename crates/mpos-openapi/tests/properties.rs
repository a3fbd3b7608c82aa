//! Properties of path handling and of the document over generated route tables.

mod common;

use std::collections::BTreeSet;

use common::{INFO, descriptors};
use mpos_openapi::{Auth, Method, Route, openapi, render, validate_routes};
use proptest::prelude::*;
use proptest::sample::subsequence;

/// A path segment: a literal, or a parameter name.
#[derive(Clone, Debug)]
enum Segment {
    Literal(String),
    Param(String),
}

fn segments() -> impl Strategy<Value = (Vec<Segment>, bool)> {
    let segment = prop_oneof![
        "[a-z0-9-]{1,8}".prop_map(Segment::Literal),
        "[a-z_][a-z0-9_]{0,8}".prop_map(Segment::Param),
    ];
    (prop::collection::vec(segment, 1..6), any::<bool>())
}

/// Leaks a string: routes hold `&'static str`, as in a service's `const` table.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn route_at(path: &'static str) -> Route {
    Route {
        method: Method::Get,
        path,
        operation_id: "op",
        summary: "Generated",
        description: "",
        tag: "generated",
        request: None,
        response: None,
        success_status: 200,
        auth: Auth::None,
        query: &[],
        errors: &[],
    }
}

proptest! {
    #[test]
    fn well_formed_paths_are_accepted_and_their_parameters_found(
        (parts, wildcard) in segments(),
    ) {
        let mut seen = BTreeSet::new();
        let mut names = Vec::new();
        let last = parts.len() - 1;
        let rendered: Vec<String> = parts
            .iter()
            .enumerate()
            .map(|(index, segment)| match segment {
                Segment::Literal(text) => text.clone(),
                Segment::Param(name) => {
                    // Parameter names are unique within a path: suffix repeats.
                    let mut unique = name.clone();
                    while !seen.insert(unique.clone()) {
                        unique.push('x');
                    }
                    names.push(unique.clone());
                    if wildcard && index == last {
                        format!("{{*{unique}}}")
                    } else {
                        format!("{{{unique}}}")
                    }
                }
            })
            .collect();
        let path = leak(format!("/{}", rendered.join("/")));
        let route = route_at(path);
        prop_assert!(validate_routes(&[route]).is_ok(), "{path}");
        prop_assert_eq!(route.path_params().collect::<Vec<_>>(), names.clone());
        prop_assert!(!route.openapi_path().contains('*'));

        let doc = openapi(INFO, &[route], &descriptors("syntax = \"proto3\";")).expect("document");
        let parameters = doc["paths"][route.openapi_path()]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let documented: Vec<&str> = parameters
            .iter()
            .map(|parameter| parameter["name"].as_str().expect("name"))
            .collect();
        prop_assert_eq!(documented, names);
    }

    #[test]
    fn path_validation_never_panics(path in "\\PC{0,40}") {
        let _ = validate_routes(&[route_at(leak(path))]);
    }

    #[test]
    fn the_document_does_not_depend_on_route_order(
        chosen in subsequence((0..6).collect::<Vec<usize>>(), 0..=6),
        seed in any::<u64>(),
    ) {
        let all: Vec<Route> = (0..6)
            .map(|index| Route {
                operation_id: leak(format!("op{index}")),
                path: leak(format!("/v1/{}/{{id}}", index % 3)),
                method: if index < 3 { Method::Get } else { Method::Delete },
                tag: if index % 2 == 0 { "even" } else { "odd" },
                errors: if index % 2 == 0 { &[404] } else { &[409, 503] },
                ..route_at("/")
            })
            .collect();
        let routes: Vec<Route> = chosen.iter().map(|index| all[*index]).collect();
        let mut shuffled = routes.clone();
        // A deterministic shuffle from the seed.
        let mut state = seed;
        for index in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let other = usize::try_from(state >> 33).expect("fits") % (index + 1);
            shuffled.swap(index, other);
        }
        let proto = descriptors("syntax = \"proto3\";");
        let first = render(&openapi(INFO, &routes, &proto).expect("document"));
        let second = render(&openapi(INFO, &shuffled, &proto).expect("document"));
        prop_assert_eq!(first, second);
    }
}
