"""An article, a rewrite of it, and another article on the same event, written for the tests."""

ORIGINAL = """Riverton's mayor, Maria Lopez, said on Tuesday that the city will spend $4.2 million to rebuild the Harbor Street bridge, which has been closed since March, when inspectors found cracks in two of its steel beams.
The work will be done by Calder Construction, a firm based in Westbrook, and is due to start on June 3. Lopez said the bridge should reopen to cars by the end of November and to trucks in early 2026.
"People have waited long enough," Lopez told reporters at City Hall. "This bridge is how half of Riverton gets to work."
The money comes from a state infrastructure grant of $3 million and $1.2 million from the city's reserve fund, which the council approved in a 7-2 vote last week.
Councilman Dale Whitaker, who voted against the plan, said the city should have sought a second bid. Calder's offer was the only one received.
Until the bridge reopens, a free shuttle bus will keep running every 20 minutes between the ferry terminal and the Elm Road station."""

REWRITE = """Maria Lopez, Riverton's mayor, announced Tuesday that the city is going to spend $4.2 million rebuilding the Harbor Street bridge, shut since March after inspectors discovered cracks in two steel beams.
Westbrook-based Calder Construction will carry out the work, starting June 3; Lopez expects cars to use the bridge again by the end of November, and trucks in early 2026.
"People have waited long enough," she said at City Hall, adding that half of Riverton relies on the bridge to get to work.
A $3 million state infrastructure grant and $1.2 million from the city's reserve fund will pay for it, after the council approved the plan 7-2 last week.
Councilman Dale Whitaker, one of the two votes against, argued the city should have asked for a second bid, since Calder's offer was the only one.
A free shuttle bus between the ferry terminal and the Elm Road station keeps running every 20 minutes until the reopening."""

OTHER = """Shop owners on Harbor Street say the closed bridge has cost them a third of their customers, and some doubt they can hold out until it reopens.
"We lost the morning trade overnight," said Anita Brooks, who has run a bakery near the bridge for 14 years. Her sales fell from about $9,000 a week to $5,500 since March.
The bridge, built in 1958, carried about 18,000 vehicles a day before engineers from the state transportation department ordered it shut. A 2019 report had already rated its deck as poor.
On Tuesday the city announced a $4.2 million repair, to be finished late this year, but the merchants' association wants rent relief and a temporary footbridge in the meantime.
Greg Hanson, the association's president, said a petition with 1,300 signatures will be handed to the council on Thursday.
Mayor Maria Lopez's office said it would review the request."""
