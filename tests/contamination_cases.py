"""A labeled set for benchmark decontamination, written for these tests (no public benchmark).

`BENCHMARK` holds benchmark-like items: math word problems, trivia questions, code tasks and a
reading passage. `LEAKS` are texts a contaminated teacher might write: each item repeated or
lightly edited (a number or a name changed, a word added or dropped, wrapped in a request or
quoted in an answer); every one must be caught, and must point at its item. `CLEAN` are texts on
the same topics (same vocabulary, same templates, the same facts stated differently) that are
not the benchmark's items; none may be caught.

Short trivia items (fewer than four content words) are their own case: a changed name makes
another question ("Who wrote Macbeth?" is not "Who wrote Hamlet?"), so those edits are in
`CLEAN` and only repeats are in `LEAKS`.
"""

from __future__ import annotations

BENCHMARK: list[str] = [
    # 0-11: math word problems
    "Priya bakes 36 cookies for a school fair. She sells 3 bags of 8 cookies each and gives "
    "5 cookies to her brother. How many cookies does she have left?",
    "A train leaves the station at 9:15 and travels at 80 kilometres per hour. How far has it "
    "travelled by 11:45?",
    "Marcus has twice as many marbles as Leo, and Leo has 14 more marbles than Ana. If Ana has "
    "9 marbles, how many marbles do the three children have together?",
    "A rectangular garden is 12 metres long and 7 metres wide. A path 1 metre wide runs around "
    "the outside of the garden. What is the area of the path?",
    "Sofia earns $18 per hour and works 6 hours on weekdays and 4 hours on Saturdays. How much "
    "does she earn in two weeks if she does not work on Sundays?",
    "A tank holds 240 litres of water. It leaks 3 litres every 10 minutes. How many hours will "
    "it take for the tank to be half empty?",
    "Omar buys a jacket that costs $120 and gets a 25% discount. He then pays 8% sales tax on "
    "the discounted price. How much does he pay in total?",
    "In a class of 30 students, 40% play football and one third of the rest play basketball. "
    "How many students play neither sport?",
    "Jenna reads 15 pages of her book on Monday and each day after that she reads 5 more pages "
    "than the day before. How many pages has she read by the end of Friday?",
    "A bakery sells muffins for $2.50 each or a box of six for $12. How much money does Kenji "
    "save by buying 18 muffins in boxes instead of one at a time?",
    "The sum of three consecutive even numbers is 138. What is the largest of the three numbers?",
    "A car uses 6.5 litres of fuel per 100 kilometres. How many litres does it need for a trip "
    "of 340 kilometres?",
    # 12-19: trivia
    "Which element has the chemical symbol Fe and the atomic number 26?",
    "In which year did the first crewed Moon landing take place?",
    "Which planet in our solar system has the longest day?",
    "What is the name of the longest river that flows entirely within Germany?",
    "Which composer wrote nine symphonies and became deaf later in life?",
    "What is the smallest prime number greater than one hundred?",
    "Which organ of the human body produces insulin?",
    "Who painted the ceiling of the Sistine Chapel in Rome?",
    # 20-22: short trivia (fewer than four content words)
    "Who wrote Hamlet?",
    "What is the capital of Canada?",
    "How many legs does a spider have?",
    # 23-30: code tasks
    "Write a Python function that returns the n-th Fibonacci number using memoization.",
    "Given a list of integers, return the indices of the two numbers that add up to a target "
    "value. You may assume each input has exactly one solution.",
    "Write a function is_palindrome(s) that checks whether a string reads the same forwards and "
    "backwards, ignoring spaces and punctuation.",
    "Implement a function that merges two sorted linked lists into one sorted linked list and "
    "returns its head.",
    "Write a SQL query that finds the second highest salary in the employees table.",
    "Given a binary tree, write a function that returns its maximum depth.",
    "Write a function that counts the number of vowels in a given string.",
    "Implement a stack class with push, pop and a get_min method that all run in constant time.",
    # 31: a reading passage with its question
    "The lighthouse keeper of Varn Island kept a logbook for forty years. Each evening he wrote "
    "down the direction of the wind, the height of the waves and the names of the ships that "
    "passed. When the island was abandoned in 1962, the logbooks were moved to the county "
    "archive, where historians later used them to study changes in the local climate. "
    "Question: Why were the logbooks useful to historians?",
]

# (item, kind of edit, text)
LEAKS: list[tuple[int, str, str]] = [
    (0, "verbatim", BENCHMARK[0]),
    (
        0,
        "number",
        "Priya bakes 40 cookies for a school fair. She sells 3 bags of 8 cookies each "
        "and gives 5 cookies to her brother. How many cookies does she have left?",
    ),
    (
        0,
        "name",
        "Aisha bakes 36 cookies for a school fair. She sells 3 bags of 8 cookies each "
        "and gives 5 cookies to her brother. How many cookies does she have left?",
    ),
    (
        1,
        "number",
        "A train leaves the station at 9:15 and travels at 90 kilometres per hour. How "
        "far has it travelled by 11:45?",
    ),
    (
        1,
        "wrapped",
        "Solve this step by step: A train leaves the station at 9:15 and travels at "
        "80 kilometres per hour. How far has it travelled by 11:45?",
    ),
    (
        2,
        "name",
        "Marcus has twice as many marbles as Tom, and Tom has 14 more marbles than Ana. "
        "If Ana has 9 marbles, how many marbles do the three children have together?",
    ),
    (
        2,
        "word added",
        "Marcus has exactly twice as many glass marbles as Leo, and Leo has 14 more "
        "marbles than Ana. If Ana has 9 marbles, how many marbles do the three children have "
        "together?",
    ),
    (
        3,
        "number",
        "A rectangular garden is 15 metres long and 7 metres wide. A path 1 metre wide "
        "runs around the outside of the garden. What is the area of the path?",
    ),
    (
        3,
        "answer quotes",
        "We are told that a rectangular garden is 12 metres long and 7 metres "
        "wide, and a path 1 metre wide runs around the outside of the garden. The outer rectangle "
        "is 14 by 9, so the area of the path is 126 - 84 = 42 square metres.",
    ),
    (
        4,
        "name+number",
        "Lucia earns $20 per hour and works 6 hours on weekdays and 4 hours on "
        "Saturdays. How much does she earn in two weeks if she does not work on Sundays?",
    ),
    (
        5,
        "number",
        "A tank holds 300 litres of water. It leaks 3 litres every 10 minutes. How many "
        "hours will it take for the tank to be half empty?",
    ),
    (
        5,
        "word dropped",
        "A tank holds 240 litres of water. It leaks 3 litres every 10 minutes. How "
        "many hours until the tank is half empty?",
    ),
    (
        6,
        "name",
        "Daniel buys a jacket that costs $120 and gets a 25% discount. He then pays 8% "
        "sales tax on the discounted price. How much does he pay in total?",
    ),
    (
        6,
        "reworded end",
        "Omar buys a jacket that costs $120 and gets a 25% discount. He then pays "
        "8% sales tax on the discounted price. What is the final amount he pays?",
    ),
    (
        7,
        "number",
        "In a class of 32 students, 40% play football and one third of the rest play "
        "basketball. How many students play neither sport?",
    ),
    (
        8,
        "name",
        "Carlos reads 15 pages of his book on Monday and each day after that he reads 5 "
        "more pages than the day before. How many pages has he read by the end of Friday?",
    ),
    (
        9,
        "number",
        "A bakery sells muffins for $3 each or a box of six for $15. How much money "
        "does Kenji save by buying 18 muffins in boxes instead of one at a time?",
    ),
    (
        10,
        "number",
        "The sum of three consecutive even numbers is 156. What is the largest of "
        "the three numbers?",
    ),
    (
        10,
        "wrapped",
        "Here is a puzzle for you. The sum of three consecutive even numbers is 138. "
        "What is the largest of the three numbers? Explain your reasoning.",
    ),
    (
        11,
        "number",
        "A car uses 7 litres of fuel per 100 kilometres. How many litres does it need "
        "for a trip of 340 kilometres?",
    ),
    (12, "verbatim", "Which element has the chemical symbol Fe and the atomic number 26?"),
    (12, "word dropped", "Which element has the symbol Fe and atomic number 26?"),
    (13, "word added", "In which exact year did the first crewed Moon landing take place?"),
    (
        13,
        "answer quotes",
        "You asked: in which year did the first crewed Moon landing take place? "
        "It was in 1969, with Apollo 11.",
    ),
    (14, "word added", "Which planet in our solar system has by far the longest day?"),
    (15, "reworded", "What is the name of the longest river flowing entirely within Germany?"),
    (
        16,
        "word added",
        "Quiz: which famous composer wrote nine symphonies and became deaf later in life?",
    ),
    (17, "number", "What is the smallest prime number greater than two hundred?"),
    (18, "word added", "Which organ of the human body produces the hormone insulin?"),
    (19, "name", "Who painted the ceiling of the Sistine Chapel in Vatican City?"),
    (20, "verbatim", "Who wrote Hamlet?"),
    (20, "wrapped", "Trivia time! Who wrote Hamlet? Give a one-word answer."),
    (21, "verbatim", "what is the capital of canada"),
    (22, "wrapped", "Answer quickly: how many legs does a spider have?"),
    (
        23,
        "reworded",
        "Write a Python function that returns the nth Fibonacci number using memoization.",
    ),
    (
        23,
        "language",
        "Write a JavaScript function that returns the n-th Fibonacci number using memoization.",
    ),
    (
        24,
        "word added",
        "Given a list of integers, return the indices of the two distinct numbers "
        "that add up to a given target value. You may assume each input has exactly one solution.",
    ),
    (
        25,
        "name",
        "Write a function check_palindrome(text) that checks whether a string reads the "
        "same forwards and backwards, ignoring spaces and punctuation.",
    ),
    (
        26,
        "word dropped",
        "Implement a function that merges two sorted linked lists into one "
        "sorted list and returns its head.",
    ),
    (27, "number", "Write a SQL query that finds the third highest salary in the employees table."),
    (
        28,
        "wrapped",
        "Coding interview question: Given a binary tree, write a function that "
        "returns its maximum depth. Use recursion.",
    ),
    (29, "name", "Write a function that counts the number of consonants in a given string."),
    (
        30,
        "word added",
        "Implement a stack class with push, pop, top and a get_min method that "
        "all run in constant time.",
    ),
    (
        31,
        "quoted part",
        "Summarise: When the island was abandoned in 1962, the logbooks were "
        "moved to the county archive, where historians later used them.",
    ),
    (
        31,
        "question",
        "Why were the logbooks of the lighthouse keeper of Varn Island useful to "
        "historians studying changes in the local climate?",
    ),
]

# texts on the same topics that are not the benchmark's items
CLEAN: list[str] = [
    "Priya bakes 24 muffins and gives half of them to her neighbours. How many muffins does "
    "she keep?",
    "A school fair sells cookies in bags of 6. If 90 cookies were baked, how many bags can be "
    "filled?",
    "A bus leaves the depot at 7:30 and arrives at the airport at 9:10. How long is the trip?",
    "A cyclist rides at 18 kilometres per hour for 2 hours and then at 12 kilometres per hour "
    "for 1 hour. What is her average speed?",
    "Leo has 25 stickers and gives 7 to Ana. How many stickers does Leo have now?",
    "A rectangular pool is 25 metres long and 10 metres wide. A walkway 2 metres wide runs "
    "around the pool. What is the area of the walkway?",
    "A square field has a perimeter of 64 metres. What is its area?",
    "Sofia saves $15 every week. How many weeks does she need to save $240 for a bicycle?",
    "A bathtub fills at 12 litres per minute and drains at 4 litres per minute. How long does "
    "it take to fill 160 litres with the drain open?",
    "A shirt costs $40 and is on sale for 15% off. What is the sale price?",
    "Out of 200 people surveyed, 35% prefer tea. How many people prefer tea?",
    "Jenna writes 3 letters every day. How many letters does she write in April?",
    "A box of 12 pencils costs $3. How much do 60 pencils cost?",
    "The product of two consecutive odd numbers is 143. What are the numbers?",
    "A truck travels 450 kilometres on 60 litres of diesel. How far can it go on 100 litres?",
    "What is the atomic number of oxygen, and what is its chemical symbol?",
    "Iron is a metal with the chemical symbol Fe; explain why it rusts in moist air.",
    "Describe the main goals of the Apollo programme.",
    "Which planet in our solar system has the most moons?",
    "Explain why a day on Venus is longer than its year.",
    "Name three rivers that flow through Germany and the seas they reach.",
    "Which composer wrote the opera The Magic Flute?",
    "List all prime numbers between 50 and 70.",
    "Explain how the pancreas helps regulate blood sugar.",
    "Who designed the dome of St Peter's Basilica?",
    "The boiling point of water drops at high altitude; explain why.",
    "Who wrote Macbeth?",
    "Who wrote the novel Pride and Prejudice?",
    "What is the capital of Australia?",
    "How many legs does an insect have?",
    "Write a Python function that returns the factorial of n using recursion.",
    "Explain what memoization is and when it speeds up a program.",
    "Given a list of integers, return the largest sum of any contiguous subarray.",
    "Write a function that reverses a string without using slicing.",
    "Implement a function that removes duplicates from a sorted array in place.",
    "Write a SQL query that counts the employees in each department.",
    "Given a binary tree, return the values of its nodes in level order.",
    "Write a function that counts how many words in a sentence start with a capital letter.",
    "Implement a queue using two stacks and explain the amortised cost of each operation.",
    "Describe the duties of a lighthouse keeper in the nineteenth century.",
    "Historians often use ship logbooks to study past weather; give two examples.",
    "Priya and Marcus share 45 marbles in the ratio 4:5. How many marbles does each get?",
    "A car rental costs $30 per day plus $0.20 per kilometre. How much does a 3-day rental "
    "with 250 kilometres cost?",
    "A class of 30 students voted for a class captain. If 12 voted for Ana, what fraction of "
    "the class voted for her?",
]


# ---------------------------------------------------------------------------------------------
# HELDOUT: a second labeled set, written by someone who had not read app/contamination.py, to
# check that the method generalises beyond the set it was designed on. Items of five kinds
# (word problems, multiple choice questions stored WITH their options, trivia, code prompts with
# a signature and docstring, reading passages with their question); leaks of the kinds a teacher
# produces (repeats, changed numbers or names, reordered or dropped options, wrapped in a
# request, a sentence added, one or two words swapped, casing, whitespace and unicode changes);
# clean texts on the same topics (same template with another problem, the answer stated as a
# fact, another question about the same passage).
#
# Conventions: a changed number or name in a word problem is a leak (the same problem); a changed
# name or number in a trivia question asks something else, so it is clean; an MCQ with its
# options dropped, reordered or relabelled is a leak of the question.
# ---------------------------------------------------------------------------------------------

_G0 = (
    "Tomas collects stamps. He had 125 stamps, bought 3 albums with 40 stamps in each, and then "
    "gave a quarter of all his stamps to his cousin. How many stamps does Tomas have now?"
)
_G1 = (
    "A farmer has 14 cows and 23 chickens. Each cow drinks 45 litres of water a day and each "
    "chicken drinks 0.25 litres. How much water do the animals drink in a week?"
)
_G2 = (
    "Elena's phone plan costs $35 a month plus $0.10 for every text message over 200. In March "
    "she sent 340 messages. What was her bill for March?"
)
_G3 = (
    "A recipe needs 3 eggs for every 250 grams of flour. Hiro wants to use 1.5 kilograms of "
    "flour. How many eggs does he need, and how many cartons of 12 eggs must he buy?"
)
_M0_Q = "Which of the following is the primary function of the mitochondria in eukaryotic cells?"
_M0_OPTS = (
    "Protein synthesis",
    "Production of ATP through cellular respiration",
    "Storage of genetic information",
    "Breakdown of waste by enzymes",
)
_M1_Q = (
    "A firm in a perfectly competitive market maximises profit in the short run by producing "
    "the quantity at which"
)
_M1_OPTS = (
    "price equals average total cost",
    "marginal revenue equals marginal cost",
    "total revenue is at its maximum",
    "average variable cost is at its minimum",
)
_M2_Q = (
    "Which of the following best describes the doctrine of judicial review in the United States?"
)
_M2_OPTS = (
    "The power of Congress to override a presidential veto",
    "The power of courts to declare laws unconstitutional",
    "The power of the president to appoint federal judges",
    "The power of states to nullify federal laws",
)
_M3_Q = "What is the value of x if 3x + 7 = 2x - 5?"
_M3_OPTS = ("-12", "-2", "2", "12")


def _mcq(question: str, options: tuple[str, ...], labels: str = "ABCD", fmt: str = "{}. {}") -> str:
    """An MCQ as benchmarks store it: the question, then one labelled option a line."""
    return "\n".join(
        [question, *(fmt.format(label, o) for label, o in zip(labels, options, strict=True))]
    )


_C0 = (
    "def running_min(values: list[float]) -> list[float]:\n"
    '    """Return a list where element i is the smallest value among values[0..i].\n'
    "\n"
    "    >>> running_min([5, 3, 4, 1, 2])\n"
    "    [5, 3, 3, 1, 1]\n"
    '    """\n'
)
_C1 = (
    "def group_anagrams(words: list[str]) -> list[list[str]]:\n"
    '    """Group the words that are anagrams of each other. Each group keeps the order in which\n'
    "    its words first appear, and groups are ordered by their first word.\n"
    "\n"
    '    >>> group_anagrams(["eat", "tea", "tan", "ate", "nat"])\n'
    '    [["eat", "tea", "ate"], ["tan", "nat"]]\n'
    '    """\n'
)
_C2 = (
    "def count_even_digit_sums(n: int) -> int:\n"
    '    """Count the integers from 1 to n (inclusive) whose digits add up to an even number.\n'
    "\n"
    "    >>> count_even_digit_sums(12)\n"
    "    5\n"
    '    """\n'
)
_R0_P = (
    "In 1887 the town of Hallsbury built a reservoir on the hill above the valley to supply its "
    "growing mills. The dam was made of packed earth rather than stone, because stone had to be "
    "brought by cart from a quarry thirty miles away. After a wet spring in 1903, water seeped "
    "through the earth wall and the engineers lowered the reservoir by half to relieve the "
    "pressure."
)
_R0_Q = "Why did the builders use packed earth for the dam?"
_R1_P = (
    "Coral reefs cover less than one percent of the ocean floor, yet they shelter about a "
    "quarter of all marine species. Reef-building corals depend on tiny algae that live inside "
    "their tissues and supply them with sugars made by photosynthesis. When the water grows too "
    "warm, the corals expel the algae and turn white, an event known as bleaching."
)
_R1_Q = "What happens to corals when the water becomes too warm?"

HELDOUT_BENCHMARK: list[str] = [
    _G0,  # 0-3: word problems
    _G1,
    _G2,
    _G3,
    _mcq(_M0_Q, _M0_OPTS),  # 4-7: multiple choice, stored with options
    _mcq(_M1_Q, _M1_OPTS),
    _mcq(_M2_Q, _M2_OPTS),
    _mcq(_M3_Q, _M3_OPTS),
    "Which gas makes up about 78 percent of the Earth's atmosphere?",  # 8-11: trivia
    "Who discovered penicillin?",
    "What is the capital of Mongolia?",
    "Which Shakespeare play features the characters Rosalind and Orlando?",
    _C0,  # 12-14: code prompts
    _C1,
    _C2,
    f"{_R0_P}\nQuestion: {_R0_Q}",  # 15-16: reading passages with their question
    f"{_R1_P}\nQuestion: {_R1_Q}",
]

_FW = str.maketrans("0123456789", "０１２３４５６７８９")  # full-width digits

HELDOUT_LEAKS: list[tuple[int, str, str]] = [
    # --- 0: stamps
    (0, "verbatim", _G0),
    (0, "number", _G0.replace("125", "150").replace("3 albums", "4 albums").replace("40", "30")),
    (
        0,
        "name",
        "Amara collects stamps. She had 125 stamps, bought 3 albums with 40 stamps in each, and "
        "then gave a quarter of all her stamps to her cousin. How many stamps does Amara have now?",
    ),
    (
        0,
        "number+name",
        "Diego collects stamps. He had 90 stamps, bought 2 albums with 55 stamps in each, and "
        "then gave a quarter of all his stamps to his sister. How many stamps does Diego have now?",
    ),
    (0, "wrapped", f"Solve this step by step: {_G0} Show your work."),
    (0, "unicode digits", _G0.translate(_FW)),
    # --- 1: farm water
    (1, "verbatim", _G1),
    (1, "synonym", _G1.replace("has 14", "owns 14").replace("a day", "per day")),
    (
        1,
        "number",
        "A farmer has 20 cows and 30 chickens. Each cow drinks 50 litres of water a day and each "
        "chicken drinks 0.3 litres. How much water do the animals drink in a week?",
    ),
    (1, "sentence added", _G1.replace("litres. How", "litres. The farm is next to a river. How")),
    (
        1,
        "casing/punctuation",
        "a farmer has 14 cows and 23 chickens\neach cow drinks 45 litres of water a day and "
        "each chicken drinks 0.25 litres\nhow much water do the animals drink in a week",
    ),
    (
        1,
        "number+name",
        "A farmer has 16 goats and 25 ducks. Each goat drinks 12 litres of water a day and each "
        "duck drinks 0.5 litres. How much water do the animals drink in a week?",
    ),
    # --- 2: phone bill
    (2, "verbatim", _G2),
    (
        2,
        "number",
        _G2.replace("$35", "$40")
        .replace("$0.10", "$0.05")
        .replace("200", "300")
        .replace("340", "420"),
    ),
    (
        2,
        "name",
        "Kofi's phone plan costs $35 a month plus $0.10 for every text message over 200. In June "
        "he sent 340 messages. What was his bill for June?",
    ),
    (2, "synonym", _G2.replace("phone plan", "mobile plan").replace("every text", "each text")),
    (2, "quoted in answer", f"Sure! Here's a practice problem for you:\n\n{_G2}\n\nAnswer: $49."),
    (
        2,
        "unicode",
        _G2.replace("'", "\u2019").replace("$35 a", "$35\u00a0a").replace(". In", ".  In"),
    ),
    # --- 3: recipe
    (3, "verbatim", _G3),
    (3, "number", _G3.replace("3 eggs", "2 eggs").replace("250", "300").replace("1.5", "1.8")),
    (
        3,
        "name",
        _G3.replace("Hiro", "Lucia").replace("does he", "does she").replace("must he", "must she"),
    ),
    (
        3,
        "sentences reordered",
        "Hiro wants to use 1.5 kilograms of flour. A recipe needs 3 eggs for every 250 grams of "
        "flour. How many eggs does he need, and how many cartons of 12 eggs must he buy?",
    ),
    (
        3,
        "part dropped",
        "A recipe needs 3 eggs for every 250 grams of flour. Hiro wants to use 1.5 kilograms of "
        "flour. How many eggs does he need?",
    ),
    # --- 4: mitochondria MCQ
    (4, "verbatim", _mcq(_M0_Q, _M0_OPTS)),
    (4, "options reordered", _mcq(_M0_Q, tuple(_M0_OPTS[i] for i in (1, 3, 0, 2)))),
    (4, "options dropped", _M0_Q),
    (4, "options inline", _mcq(_M0_Q, _M0_OPTS, fmt="({}) {}").replace("\n", " ")),
    (
        4,
        "wrapped with answer",
        f"Answer the following multiple choice question.\n\n{_mcq(_M0_Q, _M0_OPTS)}\n\nAnswer: B",
    ),
    (4, "synonym", _mcq(_M0_Q.replace("primary", "main"), _M0_OPTS)),
    # --- 5: perfect competition MCQ
    (5, "verbatim", _mcq(_M1_Q, _M1_OPTS)),
    (5, "options dropped", f"{_M1_Q} what condition holds?"),
    (5, "options reordered", _mcq(_M1_Q, tuple(_M1_OPTS[i] for i in (3, 1, 0, 2)))),
    (5, "spelling", _mcq(_M1_Q.replace("maximises", "maximizes"), _M1_OPTS)),
    (
        5,
        "markdown",
        f"**Question:** {_M1_Q}\n\n"
        + "\n".join(f"- ({c}) {o}" for c, o in zip("abcd", _M1_OPTS, strict=True)),
    ),
    # --- 6: judicial review MCQ
    (6, "verbatim", _mcq(_M2_Q, _M2_OPTS)),
    (6, "options dropped", _M2_Q),
    (
        6,
        "options reordered+relabelled",
        _mcq(_M2_Q, tuple(_M2_OPTS[i] for i in (2, 0, 3, 1)), "1234", "{}) {}"),
    ),
    (6, "synonym", _mcq(_M2_Q.replace("best describes", "best explains"), _M2_OPTS)),
    (
        6,
        "wrapped",
        "I'm studying for my civics exam. Can you help me with this one?\n" + _mcq(_M2_Q, _M2_OPTS),
    ),
    # --- 7: linear equation MCQ
    (7, "verbatim", _mcq(_M3_Q, _M3_OPTS)),
    (7, "options inline", _mcq(_M3_Q, _M3_OPTS, fmt="{}) {}").replace("\n", " ")),
    (7, "options dropped", _M3_Q),
    (7, "unicode minus", _mcq(_M3_Q, _M3_OPTS).replace("-", "\u2212")),
    # --- 8: atmosphere trivia
    (8, "verbatim", "Which gas makes up about 78 percent of the Earth's atmosphere?"),
    (8, "casing/punctuation", "which gas makes up about 78% of the earth's atmosphere"),
    (
        8,
        "wrapped",
        "Quiz time! Which gas makes up about 78 percent of the Earth's atmosphere? "
        "(Hint: it's not oxygen.)",
    ),
    (8, "synonym", "Which gas makes up roughly 78 percent of Earth's atmosphere?"),
    # --- 9: penicillin (short)
    (9, "verbatim", "Who discovered penicillin?"),
    (9, "casing/punctuation", "who discovered penicillin"),
    (
        9,
        "wrapped",
        "Here is a trivia question: Who discovered penicillin? The answer is Alexander Fleming.",
    ),
    (9, "whitespace", "Who  discovered\u00a0penicillin ?"),
    # --- 10: Mongolia (short)
    (10, "verbatim", "What is the capital of Mongolia?"),
    (10, "casing", "WHAT IS THE CAPITAL OF MONGOLIA?"),
    (10, "wrapped", "Answer briefly: what is the capital of Mongolia?"),
    # --- 11: Shakespeare
    (11, "verbatim", "Which Shakespeare play features the characters Rosalind and Orlando?"),
    (11, "synonym", "Which Shakespeare comedy features the characters Rosalind and Orlando?"),
    (
        11,
        "wrapped",
        "Trivia night question #7: Which Shakespeare play features the characters Rosalind and "
        "Orlando? Answer: As You Like It.",
    ),
    (11, "casing/punctuation", "which shakespeare play features the characters rosalind & orlando"),
    # --- 12: running_min
    (12, "verbatim", _C0),
    (12, "renamed", _C0.replace("running_min", "prefix_min").replace("values", "xs")),
    (
        12,
        "as a request",
        "Write a Python function running_min(values) that returns a list where element i is the "
        "smallest value among values[0..i]. For example, running_min([5, 3, 4, 1, 2]) returns "
        "[5, 3, 3, 1, 1].",
    ),
    (
        12,
        "example changed",
        _C0.replace("[5, 3, 4, 1, 2]", "[4, 6, 2, 8]").replace("[5, 3, 3, 1, 1]", "[4, 4, 2, 2]"),
    ),
    (12, "fenced", f"Complete this function:\n```python\n{_C0}    # your code here\n```"),
    (12, "indentation", _C0.replace("    ", "\t")),
    # --- 13: group_anagrams
    (13, "verbatim", _C1),
    (
        13,
        "as a request",
        "Write a function group_anagrams(words) that groups the words that are anagrams of each "
        "other. Each group keeps the order in which its words first appear, and groups are "
        "ordered by their first word.",
    ),
    (
        13,
        "example changed",
        _C1.replace(
            '["eat", "tea", "tan", "ate", "nat"]', '["listen", "silent", "google", "enlist"]'
        ).replace(
            '[["eat", "tea", "ate"], ["tan", "nat"]]',
            '[["listen", "silent", "enlist"], ["google"]]',
        ),
    ),
    (
        13,
        "typing changed",
        "from typing import List\n\n"
        + _C1.replace("list[str]", "List[str]").replace("list[List[str]]", "List[List[str]]"),
    ),
    (
        13,
        "sentence added",
        _C1.replace("first word.\n", "first word. Words are compared case-insensitively.\n"),
    ),
    # --- 14: count_even_digit_sums
    (14, "verbatim", _C2),
    (
        14,
        "as a request",
        "Write a function that counts the integers from 1 to n (inclusive) whose digits add up to "
        "an even number.",
    ),
    (14, "example changed", _C2.replace("sums(12)", "sums(20)").replace("    5\n", "    10\n")),
    (
        14,
        "renamed",
        _C2.replace("count_even_digit_sums", "even_digit_sum_count")
        .replace("(n: int)", "(limit: int)")
        .replace("to n (", "to limit ("),
    ),
    (14, "synonym", _C2.replace("add up to", "sum to")),
    # --- 15: reservoir passage
    (15, "verbatim", f"{_R0_P}\nQuestion: {_R0_Q}"),
    (15, "question dropped", _R0_P),
    (
        15,
        "number+name",
        _R0_P.replace("Hallsbury", "Milbrook").replace("1887", "1879").replace("1903", "1898")
        + f" Question: {_R0_Q}",
    ),
    (15, "reformatted", "Passage:\n" + _R0_P.replace(". ", ".\n") + f"\n\nQ: {_R0_Q}\nA:"),
    (
        15,
        "wrapped",
        f"Read the passage and answer the question.\n\nPassage: {_R0_P}\n\nQuestion: {_R0_Q}",
    ),
    (
        15,
        "sentence added",
        _R0_P.replace("away. After", "away. The mills made wool cloth. After") + f" {_R0_Q}",
    ),
    # --- 16: coral passage
    (16, "verbatim", f"{_R1_P}\nQuestion: {_R1_Q}"),
    (
        16,
        "synonym",
        _R1_P.replace("less than", "under").replace("ocean floor", "sea floor") + f" {_R1_Q}",
    ),
    (16, "question changed", f"{_R1_P}\nQuestion: Why do reef-building corals need algae?"),
    (
        16,
        "unicode",
        _R1_P.replace("Reef-building", "Reef\u2013building").replace(
            " the ocean", "\u00a0the\u200bocean"
        )
        + f"\nQuestion: {_R1_Q}",
    ),
    (
        16,
        "quoted part",
        "As the text says, coral reefs cover less than one percent of the ocean floor, yet they "
        "shelter about a quarter of all marine species. Reef-building corals depend on tiny algae "
        "that live inside their tissues and supply them with sugars made by photosynthesis.",
    ),
]

HELDOUT_CLEAN: list[str] = [
    # stamps
    "Tomas collects stamps. He has 80 stamps and buys 15 more each month. How many stamps will "
    "he have after a year?",
    "A stamp album holds 40 stamps per page. How many pages are needed for 360 stamps?",
    "Tomas gave a quarter of his 200 marbles to his cousin and lost 12 more. How many marbles "
    "does he have left?",
    "Explain how to find a quarter of a number, using 125 stamps as an example.",
    # farm water
    "A farmer has 14 cows. Each cow gives 22 litres of milk a day. How much milk does the farmer "
    "get in a week?",
    "A chicken drinks about a quarter of a litre of water a day. Why do chickens need more water "
    "in hot weather?",
    "A farmer has 60 animals, cows and chickens, with 170 legs in total. How many cows are there?",
    "How much water does a dairy cow drink in a day, and what affects the amount?",
    # phone bill
    "Elena's phone plan costs $35 a month. How much does she pay in a year?",
    "A phone company charges $0.10 per text message. How much do 340 messages cost?",
    "Compare two phone plans: $35 a month with unlimited texts, or $20 a month plus $0.10 per "
    "text. When is the first cheaper?",
    "Elena sent 340 text messages in March and 280 in April. How many more did she send in March?",
    # recipe
    "A cake recipe uses 200 grams of sugar for every 500 grams of flour. How much sugar goes with "
    "1.5 kilograms of flour?",
    "Eggs are sold in cartons of 12. Hiro needs 40 eggs. How many cartons must he buy?",
    "How many grams are in 1.5 kilograms?",
    "Why do recipes give flour by weight rather than by volume?",
    # mitochondria
    _mcq(
        "Which organelle is known as the powerhouse of the cell?",
        ("Nucleus", "Mitochondrion", "Golgi apparatus", "Lysosome"),
    ),
    "Explain how mitochondria produce ATP through cellular respiration.",
    _mcq(
        "Which of the following structures stores genetic information in eukaryotic cells?",
        ("Mitochondria", "Nucleus", "Ribosome", "Cell membrane"),
    ),
    "Mitochondria produce most of a cell's ATP. Which process inside them uses oxygen?",
    # perfect competition
    _mcq(
        "A monopolist maximises profit by producing the quantity at which",
        (
            "price equals marginal cost",
            "marginal revenue equals marginal cost",
            "average total cost is at its minimum",
            "demand is unit elastic",
        ),
    ),
    "In a perfectly competitive market, why is a firm's marginal revenue equal to the market "
    "price?",
    "What is the difference between average total cost and average variable cost?",
    "A firm in a perfectly competitive market faces a price of $12 and has marginal cost 2q. "
    "What quantity maximises its profit?",
    # judicial review
    _mcq(
        "Which Supreme Court case established the principle of judicial review?",
        (
            "Marbury v. Madison",
            "McCulloch v. Maryland",
            "Gibbons v. Ogden",
            "Dred Scott v. Sandford",
        ),
    ),
    "Explain the difference between judicial review and a presidential veto.",
    _mcq(
        "Which of the following best describes federalism in the United States?",
        (
            "Power divided between national and state governments",
            "Power held only by the national government",
            "Power held only by the states",
            "Power held by the courts",
        ),
    ),
    "Can Congress override a presidential veto, and what majority does it need?",
    # linear equation
    "What is the value of x if 5x - 3 = 2x + 9?",
    "Solve for x: 4(x - 2) = 12.",
    _mcq("What is the value of y if 2y = 18?", ("6", "9", "16", "36")),
    "Explain how to solve a linear equation with x on both sides.",
    # atmosphere
    "Which gas makes up about 21 percent of the Earth's atmosphere?",
    "Nitrogen makes up about 78 percent of the air. Why is it so unreactive?",
    "What percentage of the Earth's atmosphere is argon?",
    "Which gas do plants absorb from the atmosphere during photosynthesis?",
    # penicillin
    "Who discovered radium?",
    "Alexander Fleming discovered penicillin in 1928 after noticing mould on a culture plate.",
    "How did the discovery of penicillin change medicine?",
    "Who first mass-produced penicillin?",
    # Mongolia
    "What is the capital of Mongolia's neighbour Kazakhstan?",
    "Ulaanbaatar is the capital of Mongolia.",
    "What is the largest city in Mongolia?",
    "What is the capital of Bolivia?",
    # Shakespeare
    "Which Shakespeare play features the characters Viola and Orsino?",
    "In As You Like It, why does Rosalind disguise herself as a young man?",
    "Name three comedies by Shakespeare that are set in a forest.",
    # running_min
    "def running_sum(values: list[int]) -> list[int]:\n"
    '    """Return the cumulative sums of values.\n\n'
    "    >>> running_sum([1, 2, 3])\n    [1, 3, 6]\n"
    '    """\n',
    "Explain the difference between a running minimum and a sliding-window minimum.",
    "def second_smallest(values: list[float]) -> float:\n"
    '    """Return the second smallest distinct value in values.\n\n'
    "    >>> second_smallest([5, 3, 4, 1, 2])\n    2\n"
    '    """\n',
    # group_anagrams
    "def is_anagram(a: str, b: str) -> bool:\n"
    '    """Return True if a and b are anagrams of each other, ignoring case.\n\n'
    '    >>> is_anagram("Listen", "Silent")\n    True\n'
    '    """\n',
    "Group the words in a list by their length, keeping the original order inside each group.",
    "Explain why sorting the letters of a word gives a key that identifies its anagram class.",
    "def group_by_first_letter(words: list[str]) -> dict[str, list[str]]:\n"
    '    """Group words by their first letter; each group keeps the order in which its words '
    'appear."""\n',
    # count_even_digit_sums
    "def digit_sum(n: int) -> int:\n"
    '    """Return the sum of the decimal digits of n.\n\n'
    "    >>> digit_sum(1234)\n    10\n"
    '    """\n',
    "Count the integers from 1 to n that are divisible by the sum of their digits.",
    "Write a function that returns True if a number's digits add up to an even number.",
    # reservoir passage
    "Why did the engineers lower the Hallsbury reservoir by half in 1903?",
    "Explain why earth dams can fail after heavy rain.",
    "In 1887 many towns built reservoirs to supply their mills. Describe how such reservoirs "
    "were built.",
    "What were the advantages of stone dams over packed earth dams in the nineteenth century?",
    # coral passage
    "What is coral bleaching and what causes it?",
    "Why do coral reefs support so many marine species despite covering a small part of the "
    "ocean floor?",
    "Reef-building corals get sugars from algae that live in their tissues. Which process makes "
    "these sugars?",
    "Name two threats to coral reefs other than warm water.",
]
