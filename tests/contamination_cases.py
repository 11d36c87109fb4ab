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
