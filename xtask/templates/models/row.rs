#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = crate::schema::__NAME__)]
pub struct __TYPE__Row {
    pub __ID__: i32,
    pub name: String,
}

