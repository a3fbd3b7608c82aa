//! Between the protobuf rule set (events, API) and the `routing-rules` domain types that
//! validate and decide. Every conversion is total: an unknown enum value or brand name is an
//! error naming the rule and the field, never a silent "any".

use std::str::FromStr;

use mpos_proto::routing as pb;
use routing_rules as rr;

/// A protobuf rule set that cannot be read; the message names the rule and field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(pub String);

/// The domain entry mode of a protobuf one.
pub fn entry_mode(mode: i32) -> Result<rr::EntryMode, ConvertError> {
    match pb::EntryMode::try_from(mode) {
        Ok(pb::EntryMode::Chip) => Ok(rr::EntryMode::Chip),
        Ok(pb::EntryMode::Contactless) => Ok(rr::EntryMode::Contactless),
        Ok(pb::EntryMode::SwipeFallback) => Ok(rr::EntryMode::SwipeFallback),
        _ => Err(ConvertError(format!(
            "entry mode {mode} is not one of chip, contactless, swipe_fallback"
        ))),
    }
}

/// The protobuf entry mode of a domain one (`swipe` has none: it is not offered).
pub fn entry_mode_to_proto(mode: rr::EntryMode) -> pb::EntryMode {
    match mode {
        rr::EntryMode::Chip => pb::EntryMode::Chip,
        rr::EntryMode::Contactless => pb::EntryMode::Contactless,
        rr::EntryMode::Swipe | rr::EntryMode::SwipeFallback => pb::EntryMode::SwipeFallback,
    }
}

/// The domain transaction type of a protobuf one.
pub fn transaction_type(kind: i32) -> Result<rr::TransactionType, ConvertError> {
    match pb::TransactionType::try_from(kind) {
        Ok(pb::TransactionType::Purchase) => Ok(rr::TransactionType::Purchase),
        Ok(pb::TransactionType::Refund) => Ok(rr::TransactionType::Refund),
        Ok(pb::TransactionType::PreAuthorization) => Ok(rr::TransactionType::PreAuthorization),
        Ok(pb::TransactionType::Completion) => Ok(rr::TransactionType::Completion),
        _ => Err(ConvertError(format!(
            "transaction type {kind} is not one of purchase, refund, pre_authorization, completion"
        ))),
    }
}

/// The protobuf transaction type of a domain one.
pub fn transaction_type_to_proto(kind: rr::TransactionType) -> pb::TransactionType {
    match kind {
        rr::TransactionType::Purchase => pb::TransactionType::Purchase,
        rr::TransactionType::Refund => pb::TransactionType::Refund,
        rr::TransactionType::PreAuthorization => pb::TransactionType::PreAuthorization,
        rr::TransactionType::Completion => pb::TransactionType::Completion,
    }
}

fn route(route: &pb::Route, at: &str) -> Result<rr::Route, ConvertError> {
    match &route.kind {
        Some(pb::route::Kind::Priority(priority)) => {
            Ok(rr::Route::Priority(priority.acquirer_ids.clone()))
        }
        Some(pb::route::Kind::Split(split)) => Ok(rr::Route::Split(
            split
                .acquirers
                .iter()
                .map(|entry| rr::WeightedAcquirer::new(entry.acquirer_id.clone(), entry.weight))
                .collect(),
        )),
        None => Err(ConvertError(format!(
            "{at}: route: neither priority nor split"
        ))),
    }
}

fn route_to_proto(route: &rr::Route) -> pb::Route {
    let kind = match route {
        rr::Route::Priority(ids) => pb::route::Kind::Priority(pb::PriorityRoute {
            acquirer_ids: ids.clone(),
        }),
        rr::Route::Split(entries) => pb::route::Kind::Split(pb::SplitRoute {
            acquirers: entries
                .iter()
                .map(|entry| pb::WeightedAcquirer {
                    acquirer_id: entry.acquirer.clone(),
                    weight: entry.weight,
                })
                .collect(),
        }),
    };
    pb::Route { kind: Some(kind) }
}

fn conditions(conditions: &pb::Conditions, at: &str) -> Result<rr::Conditions, ConvertError> {
    let brands = conditions
        .brands
        .iter()
        .map(|name| {
            rr::CardBrand::from_str(name)
                .map_err(|_| ConvertError(format!("{at}: brands: unknown brand {name:?}")))
        })
        .collect::<Result<_, _>>()?;
    let entry_modes = conditions
        .entry_modes
        .iter()
        .map(|mode| entry_mode(*mode).map_err(|e| ConvertError(format!("{at}: entry_modes: {e}"))))
        .collect::<Result<_, _>>()?;
    let transaction_types = conditions
        .transaction_types
        .iter()
        .map(|kind| {
            transaction_type(*kind)
                .map_err(|e| ConvertError(format!("{at}: transaction_types: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(rr::Conditions {
        bin_ranges: conditions
            .bin_ranges
            .iter()
            .map(|range| rr::BinRange::new(range.low.clone(), range.high.clone()))
            .collect(),
        brands,
        currencies: conditions.currencies.clone(),
        amount_min: conditions.amount_min,
        amount_max: conditions.amount_max,
        merchants: conditions.merchants.clone(),
        mccs: conditions.mccs.clone(),
        terminal_groups: conditions.terminal_groups.clone(),
        entry_modes,
        transaction_types,
    })
}

fn conditions_to_proto(conditions: &rr::Conditions) -> pb::Conditions {
    pb::Conditions {
        bin_ranges: conditions
            .bin_ranges
            .iter()
            .map(|range| pb::BinRange {
                low: range.low.clone(),
                high: range.high.clone(),
            })
            .collect(),
        brands: conditions
            .brands
            .iter()
            .map(|brand| brand.as_str().to_owned())
            .collect(),
        currencies: conditions.currencies.clone(),
        amount_min: conditions.amount_min,
        amount_max: conditions.amount_max,
        merchants: conditions.merchants.clone(),
        mccs: conditions.mccs.clone(),
        terminal_groups: conditions.terminal_groups.clone(),
        entry_modes: conditions
            .entry_modes
            .iter()
            .map(|mode| entry_mode_to_proto(*mode).into())
            .collect(),
        transaction_types: conditions
            .transaction_types
            .iter()
            .map(|kind| transaction_type_to_proto(*kind).into())
            .collect(),
    }
}

/// The domain rule set of a protobuf one, at `version`.
pub fn rule_set(rules: &pb::RuleSet, version: u64) -> Result<rr::RuleSet, ConvertError> {
    let converted = rules
        .rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let at = format!("rules[{index}] ({})", rule.id);
            Ok(rr::Rule {
                id: rule.id.clone(),
                description: rule.description.clone(),
                conditions: conditions(&rule.conditions.clone().unwrap_or_default(), &at)?,
                route: route(
                    rule.route
                        .as_ref()
                        .ok_or_else(|| ConvertError(format!("{at}: route: missing")))?,
                    &at,
                )?,
                enabled: rule.enabled,
            })
        })
        .collect::<Result<_, ConvertError>>()?;
    let default_route = rules
        .default_route
        .as_ref()
        .map(|default| route(default, "default_route"))
        .transpose()?;
    Ok(rr::RuleSet {
        version,
        rules: converted,
        default_route,
    })
}

/// The protobuf rule set of a domain one.
pub fn rule_set_to_proto(rules: &rr::RuleSet) -> pb::RuleSet {
    pb::RuleSet {
        rules: rules
            .rules
            .iter()
            .map(|rule| pb::Rule {
                id: rule.id.clone(),
                description: rule.description.clone(),
                enabled: rule.enabled,
                conditions: Some(conditions_to_proto(&rule.conditions)),
                route: Some(route_to_proto(&rule.route)),
            })
            .collect(),
        default_route: rules.default_route.as_ref().map(route_to_proto),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> pb::RuleSet {
        pb::RuleSet {
            rules: vec![pb::Rule {
                id: "eu-visa".into(),
                description: "Visa in euros".into(),
                enabled: true,
                conditions: Some(pb::Conditions {
                    bin_ranges: vec![pb::BinRange {
                        low: "400000".into(),
                        high: "499999".into(),
                    }],
                    brands: vec!["visa".into()],
                    currencies: vec!["EUR".into()],
                    amount_min: Some(1),
                    amount_max: Some(500_000),
                    merchants: vec!["m-1".into()],
                    mccs: vec!["5411".into()],
                    terminal_groups: vec!["g-1".into()],
                    entry_modes: vec![
                        pb::EntryMode::Chip.into(),
                        pb::EntryMode::Contactless.into(),
                    ],
                    transaction_types: vec![pb::TransactionType::Purchase.into()],
                }),
                route: Some(pb::Route {
                    kind: Some(pb::route::Kind::Split(pb::SplitRoute {
                        acquirers: vec![
                            pb::WeightedAcquirer {
                                acquirer_id: "acq-a".into(),
                                weight: 70,
                            },
                            pb::WeightedAcquirer {
                                acquirer_id: "acq-b".into(),
                                weight: 30,
                            },
                        ],
                    })),
                }),
            }],
            default_route: Some(pb::Route {
                kind: Some(pb::route::Kind::Priority(pb::PriorityRoute {
                    acquirer_ids: vec!["acq-b".into(), "acq-a".into()],
                })),
            }),
        }
    }

    #[test]
    fn a_rule_set_survives_the_round_trip() {
        let domain = rule_set(&sample(), 3).expect("convert");
        assert_eq!(domain.version, 3);
        assert_eq!(domain.rules[0].conditions.brands, vec![rr::CardBrand::Visa]);
        assert_eq!(rule_set_to_proto(&domain), sample());
    }

    #[test]
    fn unknown_values_are_errors_naming_the_rule() {
        let mut bad = sample();
        if let Some(conditions) = bad.rules[0].conditions.as_mut() {
            conditions.brands = vec!["visa-gold".into()];
        }
        assert_eq!(
            rule_set(&bad, 1).err().map(|e| e.0),
            Some("rules[0] (eu-visa): brands: unknown brand \"visa-gold\"".into())
        );
        let mut no_route = sample();
        no_route.rules[0].route = None;
        assert_eq!(
            rule_set(&no_route, 1).err().map(|e| e.0),
            Some("rules[0] (eu-visa): route: missing".into())
        );
        let mut bad_mode = sample();
        if let Some(conditions) = bad_mode.rules[0].conditions.as_mut() {
            conditions.entry_modes = vec![0];
        }
        assert!(rule_set(&bad_mode, 1).is_err());
    }
}
