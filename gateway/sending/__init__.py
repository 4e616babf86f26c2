"""The one door every broadcast goes through: the rules as a table, a plan, then the write."""
