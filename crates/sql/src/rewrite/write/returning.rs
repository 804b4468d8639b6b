//! RETURNING of a write: checked like the rest of the statement, then the target's
//! masked columns replaced by their masks, `*` expanded as `SELECT *` would show it.

use super::*;

/// Checks RETURNING, then replaces the target's masked columns by their masks (a bare
/// column keeps its name) and expands `*` and `target.*` to what `SELECT *` would show
/// of the target; `*` also expands to `source.*` for each other FROM item.
pub(super) fn rewrite_returning(
    rewriter: &mut Rewriter<'_>,
    returning: &mut Vec<SelectItem>,
    sources: &[FromItem],
) -> Result<(), Denial> {
    let Some(target) = rewriter.target.as_mut() else {
        return Err(internal());
    };
    target.returning = true;
    let (table, reference) = (target.table.clone(), target.name.clone());
    for item in returning.iter_mut() {
        match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                rewriter.visit(expr)?
            }
            SelectItem::Wildcard(options)
            | SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(_),
                options,
            ) => plain_wildcard(options)?,
            SelectItem::QualifiedWildcard(..) => {
                return Err(Denial::unsupported("this RETURNING item"))
            }
        }
    }
    let projection = target_projection(rewriter, &table, &reference)?;
    let masks: BTreeMap<String, Expr> = projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { expr, alias } => Some((alias.value.clone(), expr.clone())),
            _ => None,
        })
        .collect();
    let mut substitute = Substitute {
        reference: &reference,
        masks: &masks,
        skip: 0,
    };
    let mut out = Vec::with_capacity(returning.len());
    for item in returning.drain(..) {
        match item {
            SelectItem::Wildcard(options) => {
                out.extend(projection.iter().cloned());
                for source in sources {
                    if source.name.is_empty() {
                        return Err(Denial::unsupported("RETURNING * with an unnamed FROM item"));
                    }
                    out.push(SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(ObjectName::from(vec![
                            quoted(&source.name),
                        ])),
                        options.clone(),
                    ));
                }
            }
            SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(name),
                options,
            ) => {
                let parts = names::parts(&name)?;
                match parts.as_slice() {
                    [one] if *one == reference => out.extend(projection.iter().cloned()),
                    [_] => out.push(SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(name),
                        options,
                    )),
                    _ => return Err(Denial::unsupported("this RETURNING item")),
                }
            }
            SelectItem::UnnamedExpr(mut expr) => match substitute.masked(&expr) {
                Some((column, mask)) => out.push(SelectItem::ExprWithAlias {
                    expr: mask.clone(),
                    alias: quoted(column),
                }),
                None => {
                    let _ = expr.visit(&mut substitute);
                    out.push(SelectItem::UnnamedExpr(expr));
                }
            },
            SelectItem::ExprWithAlias { mut expr, alias } => {
                let _ = expr.visit(&mut substitute);
                out.push(SelectItem::ExprWithAlias { expr, alias });
            }
            SelectItem::QualifiedWildcard(..) => {
                return Err(Denial::unsupported("this RETURNING item"))
            }
        }
    }
    *returning = out;
    Ok(())
}

/// The target's columns as its masking subquery projects them, qualified with the name
/// the statement uses for the target.
fn target_projection(
    rewriter: &Rewriter<'_>,
    table: &QualifiedName,
    reference: &str,
) -> Result<Vec<SelectItem>, Denial> {
    let fence = match rewriter.enforcer.fences.get(table) {
        Some(Ok(fence)) => fence,
        Some(Err(denial)) => return Err(denial.clone()),
        None => return Err(internal()),
    };
    let SetExpr::Select(select) = fence.body.as_ref() else {
        return Err(internal());
    };
    let mut projection = select.projection.clone();
    if reference != table.name {
        let _ = visit_expressions_mut(&mut projection, |expr| {
            if let Expr::CompoundIdentifier(parts) = expr {
                if parts.len() == 2 && parts[0].value == table.name {
                    parts[0] = quoted(reference);
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }
    Ok(projection)
}

/// Replaces references to the target's masked columns by their masks, outside
/// subqueries (the checks refused them inside).
struct Substitute<'a> {
    reference: &'a str,
    masks: &'a BTreeMap<String, Expr>,
    skip: usize,
}

impl<'a> Substitute<'a> {
    /// The masked column `expr` names directly, with its mask.
    fn masked(&self, expr: &Expr) -> Option<(&'a str, &'a Expr)> {
        let column = match expr {
            Expr::Identifier(ident) => fold(ident),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [.., qualifier, column] if fold(qualifier) == self.reference => fold(column),
                _ => return None,
            },
            _ => return None,
        };
        self.masks
            .get_key_value(&column)
            .map(|(column, mask)| (column.as_str(), mask))
    }
}

impl VisitorMut for Substitute<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.skip += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.skip -= 1;
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if self.skip == 0 {
            if let Some((_, mask)) = self.masked(expr) {
                *expr = mask.clone();
            }
        }
        ControlFlow::Continue(())
    }
}
