//! Roles of API tokens and portal users, and what each may do.

string_enum! {
    /// A principal's role; each includes the rights of the ones below it.
    Role {
        /// Read only.
        Viewer = "viewer",
        /// Onboard, edit, close issues, run rollouts.
        Operator = "operator",
        /// Everything, including tokens, users and subscriptions.
        Admin = "admin",
    }
}

impl Role {
    /// Whether this role may change sensors, zones and health issues.
    pub fn can_operate(self) -> bool {
        self >= Role::Operator
    }

    /// Whether this role may manage tokens, users, subscriptions and webhooks.
    pub fn can_administer(self) -> bool {
        self == Role::Admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_nest() {
        assert!(!Role::Viewer.can_operate() && !Role::Viewer.can_administer());
        assert!(Role::Operator.can_operate() && !Role::Operator.can_administer());
        assert!(Role::Admin.can_operate() && Role::Admin.can_administer());
    }
}
